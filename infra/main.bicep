// dvrelay on Azure: a Service Bus namespace with the event queue and the one dead-letter queue
// support looks in, and the `handler` binary as a Functions custom handler on Linux, reaching
// Service Bus and its own storage through a user-assigned managed identity. No keys, connection
// strings or other secrets are created or stored: local (SAS) auth is off on the namespace and
// shared-key access is off on the storage account.
//
// Deploy into an existing resource group:
//   az deployment group create -g <rg> -f infra/main.bicep -p baseName=dvrelay
// then publish the app from the repository root (see infra/README.md).

targetScope = 'resourceGroup'

@description('Short name the resource names are built from (lower-case letters and digits).')
@minLength(3)
@maxLength(11)
param baseName string = 'dvrelay'

@description('Region for every resource.')
param location string = resourceGroup().location

@description('The queue the intake publishes to and the worker is triggered by.')
param queueName string = 'dataverse-events'

@description('The one queue support looks in: the worker\'s parked events and the main queue\'s own dead letters.')
param deadLetterQueueName string = 'dataverse-events-deadletter'

@description('How long an event may wait on the main queue before it is dead-lettered (ISO 8601).')
param messageTimeToLive string = 'P14D'

@description('Upper bound on Flex Consumption instances; it also bounds the load on ERP, scoring and Dataverse.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per Flex Consumption instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Also grant Azure Service Bus Data Owner on the main queue only. The Functions docs list Data Owner next to Data Receiver for the Service Bus trigger; turn this on if the app does not scale out on queue length with Receiver alone.')
param grantTriggerScaleOwner bool = false

var suffix = uniqueString(resourceGroup().id, baseName)
var names = {
  identity: 'id-${baseName}-${suffix}'
  serviceBus: 'sb-${baseName}-${suffix}'
  storage: take('st${baseName}${suffix}', 24)
  logs: 'log-${baseName}-${suffix}'
  insights: 'appi-${baseName}-${suffix}'
  plan: 'plan-${baseName}-${suffix}'
  app: 'func-${baseName}-${suffix}'
}
var deploymentContainerName = 'app-package'

// Built-in role definition IDs (the same in every tenant).
var roles = {
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// ---------------------------------------------------------------------------------------------
// Identity: one user-assigned identity for the app, so role assignments can exist before the
// app does and survive its re-creation.

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: names.identity
  location: location
}

// ---------------------------------------------------------------------------------------------
// Service Bus. Standard tier: duplicate detection and auto-forwarding need it (Basic has neither).

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: names.serviceBus
  location: location
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    minimumTlsVersion: '1.2'
    disableLocalAuth: true // Microsoft Entra ID only: there is no SAS key to leak
  }
}

// The dead-letter queue is an ordinary queue: the worker cannot dead-letter a message the
// Functions host holds the lock on, so it sends a copy here instead.
resource deadLetterQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: serviceBus
  name: deadLetterQueueName
  properties: {
    lockDuration: 'PT1M'
    // The worker may park the same delivery twice (it crashed before answering the host); the
    // copy keeps the MessageID, so one entry remains.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    // `handler dlq resubmit` locks and then abandons every message it passes on the way to the
    // one it resubmits, and each abandon counts as a delivery. A high ceiling keeps parked events
    // from being dead-lettered a second time by support tooling.
    maxDeliveryCount: 2000
    // Parked events stay until support resubmits or removes them.
    deadLetteringOnMessageExpiration: false
    requiresSession: false
    enablePartitioning: false
  }
}

resource mainQueue 'Microsoft.ServiceBus/namespaces/queues@2024-01-01' = {
  parent: serviceBus
  name: queueName
  properties: {
    // The worker bounds one delivery (every step and its quick retries) well inside this, and
    // the host renews the lock for up to maxAutoLockRenewalDuration (host.json).
    lockDuration: 'PT1M'
    // MessageID = EventId: a webhook Dataverse retries is dropped here, not processed twice.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    // Only crash loops get here: the worker settles every outcome itself and answers 2xx, so a
    // message is abandoned only when the handler fails to answer.
    maxDeliveryCount: 10
    defaultMessageTimeToLive: messageTimeToLive
    deadLetteringOnMessageExpiration: true
    // The broker's own dead letters (crash loops, expiry) go to the same queue as the worker's
    // parked copies, so support looks in one place.
    forwardDeadLetteredMessagesTo: deadLetterQueue.name
    requiresSession: false
    enablePartitioning: false
  }
}

// Data Sender: the intake publishes, the worker schedules retries and parks copies.
// Data Receiver: the Functions trigger, `handler serve` and the dead-letter tooling receive.
resource serviceBusSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(serviceBus.id, appIdentity.id, roles.serviceBusDataSender)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource serviceBusReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(serviceBus.id, appIdentity.id, roles.serviceBusDataReceiver)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource triggerScaleOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantTriggerScaleOwner) {
  name: guid(mainQueue.id, appIdentity.id, roles.serviceBusDataOwner)
  scope: mainQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataOwner)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------
// Host storage (AzureWebJobsStorage) and the deployment package container, reached by identity.

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: names.storage
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource storageBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------
// Monitoring, with local (key) auth off: the app signs its telemetry with the identity.

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: names.logs
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: names.insights
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}

resource insightsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, appIdentity.id, roles.monitoringMetricsPublisher)
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------
// The Function App: Flex Consumption on Linux, custom handler. On Flex the worker runtime is the
// site's functionAppConfig.runtime ('custom', which the platform exposes to the host as
// FUNCTIONS_WORKER_RUNTIME=custom); the plan rejects FUNCTIONS_WORKER_RUNTIME as an app setting.

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: names.plan
  location: location
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

// The namespace host name without scheme and port, as the Service Bus extension and the Go SDK
// expect it (e.g. sb-dvrelay-abc.servicebus.windows.net); works in sovereign clouds too.
var serviceBusHost = replace(replace(serviceBus.properties.serviceBusEndpoint, 'https://', ''), ':443/', '')

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: names.app
  location: location
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${appIdentity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [
        // Host storage by identity.
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storage.name
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: appIdentity.properties.clientId
        }
        // Service Bus by identity: read by the trigger ("connection": "ServiceBusConnection")
        // and by the handler's own publisher and dead-letter sender, from the same settings.
        {
          name: 'ServiceBusConnection__fullyQualifiedNamespace'
          value: serviceBusHost
        }
        {
          name: 'ServiceBusConnection__credential'
          value: 'managedidentity'
        }
        {
          name: 'ServiceBusConnection__clientId'
          value: appIdentity.properties.clientId
        }
        {
          name: 'ServiceBusQueueName'
          value: mainQueue.name
        }
        {
          name: 'DeadLetterQueueName'
          value: deadLetterQueue.name
        }
        // Telemetry signed with the identity (the connection string carries no secret).
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: insights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${appIdentity.properties.clientId};Authorization=AAD'
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: appIdentity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }
  dependsOn: [
    // The host reads storage and Service Bus as soon as it starts.
    deploymentContainer
    storageBlobOwner
    serviceBusSender
    serviceBusReceiver
  ]
}

output functionAppName string = app.name
output webhookUrl string = 'https://${app.properties.defaultHostName}/api/dataverse/webhook'
output serviceBusNamespace string = serviceBusHost
output queueName string = mainQueue.name
output deadLetterQueueName string = deadLetterQueue.name
output identityClientId string = appIdentity.properties.clientId
