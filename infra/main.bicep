// dvrelay on Azure: a Service Bus namespace with the event queue and the one dead-letter queue
// support looks in, and the `handler` binary as a Functions custom handler on Flex Consumption,
// reaching Service Bus, its own storage and (optionally) Key Vault through one user-assigned
// managed identity. Local (SAS) auth is off on the namespace and shared-key access is off on the
// storage account, so no connection string exists to leak.
//
// `azd up` deploys it (azure.yaml, main.parameters.json); so does
//   az deployment group create -g <rg> -f infra/main.bicep -p environmentName=prod
// Every app setting the handler reads is a parameter below: the site's app settings are this
// template's list and nothing else, so a setting added by hand in the portal is removed by the
// next deployment. Set it here (azd env set <SETTING> <value>) instead.

targetScope = 'resourceGroup'

@description('azd environment name: part of every resource name and the azd-env-name tag. Empty outside azd.')
param environmentName string = ''

@description('Short name the resource names are built from (lower-case letters and digits).')
@minLength(3)
@maxLength(11)
param baseName string = 'dvrelay'

@description('Region for every resource.')
param location string = resourceGroup().location

@description('Upper bound on Flex Consumption on-demand instances of each per-function scale group (the EventWorker group and the HTTP group each get up to this many); it also bounds the load on ERP, scoring and Dataverse.')
// 1 to 1000, as the current Flex Consumption docs allow (event-driven-scaling.md, "Limit
// scale-out", ms.date 2026-08-03); an earlier version gave 40 as the lowest maximum.
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

@description('Grant Azure Service Bus Data Owner on the main queue (only there) so the platform can scale on queue length. See the role assignment below.')
param grantTriggerScaleOwner bool = true

@description('Keep the webhook secret and the Dataverse client secret in a Key Vault the app reads through Key Vault references. A vault is created only when one of them is set.')
param useKeyVault bool = true

@description('Email address told when dead-lettered events wait for support. Empty: the alert still fires and shows in the portal, but tells no one.')
param alertEmail string = ''

@description('Object id of a person or pipeline that may inspect and resubmit dead letters from a workstation (`handler dlq`): granted Service Bus Data Sender and Receiver. azd passes the signed-in principal.')
param operatorPrincipalId string = ''

// ---------------------------------------------------------------------------------------------
// Settings the handler reads (docs/settings.md). An empty value is left out of the app
// settings, so the handler's own default applies; the defaults are not repeated here.

@description('ServiceBusQueueName: the queue the intake publishes to and the EventWorker trigger reads.')
param queueName string = 'dataverse-events'

@description('DeadLetterQueueName: the one queue support looks in (the worker\'s parked events and the main queue\'s own dead letters).')
param deadLetterQueueName string = 'dataverse-events-deadletter'

@description('DVRELAY_MAX_BODY_BYTES: intake body limit in bytes.')
param maxBodyBytes string = ''

@description('DVRELAY_WEBHOOK_SECRET: comma-separated shared secrets Dataverse sends in a header (HttpHeader auth). Stored in Key Vault when useKeyVault is true.')
@secure()
param webhookSecret string = ''

@description('DVRELAY_WEBHOOK_SECRET_HEADER: the header the secret arrives in.')
param webhookSecretHeader string = ''

@description('DVRELAY_PUBLISH_TIMEOUT: how long the intake waits for Service Bus before answering 503 (Go duration, e.g. 10s).')
param publishTimeout string = ''

@description('DVRELAY_USE_SESSIONS: per-record order on Service Bus; on unless false. It sets SessionId = the record (Entity + RecordId), makes the main queue session-enabled (fixed when the queue is created: changing it later fails the deployment) and `handler package` writes the same value into EventWorker/function.json (isSessionsEnabled).')
@allowed([
  ''
  'true'
  'false'
])
param useSessions string = ''

@description('DVRELAY_ACCEPT_STAGES: comma-separated pipeline stages (10, 20, 40) whose events the intake queues; empty means 40 (PostOperation). An event from another stage is answered 200 without being queued when its step is synchronous, 422 when it is asynchronous.')
param acceptStages string = ''

@description('DVRELAY_SHUTDOWN_GRACE: how long shutdown waits for in-flight work (Go duration).')
param shutdownGrace string = ''

@description('DVRELAY_RETRY_DELAY: the back-off after an event\'s first transient failure (Go duration, default 30s); it doubles per attempt.')
param retryDelay string = ''

@description('DVRELAY_ROUTES: the routes file, relative to the app root. `handler package` ships the file this names (azd passes the same value to the package hook).')
param routesFile string = ''

@description('DATAVERSE_URL: the environment URL, https://<org>.crm.dynamics.com. Empty: dataverse-update and dataverse-read steps are skipped.')
param dataverseUrl string = ''

@description('DVRELAY_STRICT_ROUTES: true stops start-up when a routes step would be skipped (a setting it references is unset, or DATAVERSE_URL is), rather than completing every event without that step. On by default here: set the shipped routes\' DVRELAY_CREDIT_URL and DVRELAY_ERP_URL (and DATAVERSE_URL), or set this to false while they are not ready.')
@allowed([
  'true'
  'false'
])
param strictRoutes string = 'true'

@description('DVRELAY_MAX_ATTEMPTS: delivery attempts before a transiently failing event is dead-lettered.')
param maxAttempts string = ''

@description('DVRELAY_IGNORE_USER_IDS: comma-separated systemuser ids (the integration\'s application user) whose events are skipped.')
param ignoreUserIds string = ''

@description('DVRELAY_LOG_LEVEL: debug, info, warn or error.')
@allowed([
  ''
  'debug'
  'info'
  'warn'
  'error'
])
param logLevel string = ''

@description('DVRELAY_LOG_FORMAT: json, text, or auto (text on a terminal; in Azure stdout is not one, so JSON).')
@allowed([
  ''
  'auto'
  'json'
  'text'
])
param logFormat string = ''

@description('DVRELAY_MAX_INFLIGHT: webhook requests handled at once; past it the intake answers 503 with Retry-After at once. Empty: the handler default (64).')
param maxInFlight string = ''

@description('DVRELAY_MAX_BYTES_IN_FLIGHT: bytes of webhook bodies held at once; past it the intake answers 503 with Retry-After at once. Empty: the handler default (4 bodies at the body limit, at most DVRELAY_MAX_INFLIGHT of them).')
param maxBytesInFlight string = ''

@description('DVRELAY_CREDIT_URL: the credit scoring API the shipped routes call. Empty: that step is skipped.')
param creditUrl string = ''

@description('DVRELAY_ERP_URL: the ERP API the shipped routes call. Empty: that step is skipped.')
param erpUrl string = ''

@description('DVRELAY_SCORE_COLUMN: the column the credit score is written to.')
param scoreColumn string = ''

@description('AZURE_CLIENT_ID: the identity the handler calls Dataverse as. Empty: the app\'s own managed identity (give it an application user in Dataverse). With dataverseTenantId and dataverseClientSecret: an app registration.')
param dataverseClientId string = ''

@description('AZURE_TENANT_ID: the app registration\'s tenant, with dataverseClientId and dataverseClientSecret.')
param dataverseTenantId string = ''

@description('AZURE_CLIENT_SECRET: the app registration\'s secret. Stored in Key Vault when useKeyVault is true.')
@secure()
param dataverseClientSecret string = ''

// ---------------------------------------------------------------------------------------------

var suffix = uniqueString(resourceGroup().id, baseName, environmentName)
var names = {
  identity: 'id-${baseName}-${suffix}'
  serviceBus: 'sb-${baseName}-${suffix}'
  storage: take('st${baseName}${suffix}', 24)
  vault: take('kv${baseName}${suffix}', 24)
  logs: 'log-${baseName}-${suffix}'
  insights: 'appi-${baseName}-${suffix}'
  plan: 'plan-${baseName}-${suffix}'
  app: 'func-${baseName}-${suffix}'
  actionGroup: 'ag-${baseName}-${suffix}'
  deadLetterAlert: 'alert-${baseName}-${suffix}-dead-letters'
}
var tags = empty(environmentName) ? {} : { 'azd-env-name': environmentName }
// azd finds the app to deploy to by this tag; the value is the service name in azure.yaml.
var appTags = union(tags, { 'azd-service-name': 'dvrelay' })
var deploymentContainerName = 'app-package'
var secretNames = {
  webhook: 'dvrelay-webhook-secret'
  dataverseClient: 'dvrelay-dataverse-client-secret'
}
var keyVaultUsed = useKeyVault && (!empty(webhookSecret) || !empty(dataverseClientSecret))

// Built-in role definition IDs (the same in every tenant).
var roles = {
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}

// ---------------------------------------------------------------------------------------------
// Identity: one user-assigned identity for the app, so role assignments can exist before the
// app does and survive its re-creation.

resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: names.identity
  location: location
  tags: tags
}

// ---------------------------------------------------------------------------------------------
// Service Bus. Standard tier: duplicate detection and auto-forwarding need it (Basic has neither).

resource serviceBus 'Microsoft.ServiceBus/namespaces@2024-01-01' = {
  name: names.serviceBus
  location: location
  tags: tags
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
    // One delivery is bounded by the worker's process timeout (2 min, quick retries included)
    // plus the reroute of its outcome (a scheduled retry or a dead-letter copy), 3 min. A lock
    // that long covers a whole delivery even if a lock renewal fails; the host also renews it
    // up to maxAutoLockRenewalDuration (host.json), which also covers a retry in place's wait
    // on a session queue (5 min more; with sessions this is the session's lock).
    lockDuration: 'PT3M'
    // MessageID = EventId: a webhook Dataverse retries is dropped here, not processed twice.
    // The same window as the embedded queue's DVRELAY_DUPLICATE_WINDOW default.
    requiresDuplicateDetection: true
    duplicateDetectionHistoryTimeWindow: 'PT10M'
    // Without sessions the worker's retries do not count here: it schedules a fresh copy for
    // each later attempt (DVRELAY_MAX_ATTEMPTS bounds those) and answers 2xx. Only a delivery
    // the handler fails to answer (a crash, or the reroute itself failing) is abandoned and
    // counted, so this bounds crash loops; the same ceiling as the embedded queue's
    // DVRELAY_MAX_DELIVERY_COUNT default. With sessions a retry keeps its place in the record's
    // session: each attempt is a delivery (worker.InPlacePolicy: 76 attempts span six hours),
    // so the ceiling sits above them and the worker dead-letters with its own reason first.
    maxDeliveryCount: useSessions == 'false' ? 10 : 100
    defaultMessageTimeToLive: 'P14D'
    deadLetteringOnMessageExpiration: true
    // The broker's own dead letters (crash loops, expiry) go to the same queue as the worker's
    // parked copies, so support looks in one place and one alert watches it.
    forwardDeadLetteredMessagesTo: deadLetterQueue.name
    requiresSession: useSessions != 'false'
    enablePartitioning: false
  }
}

// Data Sender: the intake publishes, the worker schedules retries and parks copies.
// Data Receiver: the Functions trigger and the dead-letter tooling receive.
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

// Data Owner, on the main queue only, for scaling. Flex Consumption scales a Service Bus trigger
// with the extension's target-based scaler, which reads the queue's active message count through
// the administration API (GetQueueRuntimeProperties). That call needs the Manage right, which of
// the data roles only Data Owner carries; with Receiver alone the scaler gives up
// ("Target scaler is not supported") and the platform falls back to peeking at the first message.
// (azure-sdk-for-net, Microsoft.Azure.WebJobs.Extensions.ServiceBus: ServiceBusMetricsProvider
// GetMessageCountAsync, ServiceBusTargetScaler.) The Functions docs list Receiver or Owner for
// the trigger. Set grantTriggerScaleOwner=false to keep least privilege and accept that fallback.
resource triggerScaleOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantTriggerScaleOwner) {
  name: guid(mainQueue.id, appIdentity.id, roles.serviceBusDataOwner)
  scope: mainQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataOwner)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The operator's own access for `handler dlq list/resubmit` from a workstation.
resource operatorSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(serviceBus.id, operatorPrincipalId, roles.serviceBusDataSender)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: operatorPrincipalId
  }
}

resource operatorReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(serviceBus.id, operatorPrincipalId, roles.serviceBusDataReceiver)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: operatorPrincipalId
  }
}

// ---------------------------------------------------------------------------------------------
// Host storage (AzureWebJobsStorage) and the deployment package container, reached by identity.

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: names.storage
  location: location
  tags: tags
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

// Blob Data Owner: host storage and the Flex deployment container.
resource storageBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Table Data Contributor: the host writes diagnostic events to tables; without it the host log
// fills with warnings.
resource storageTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------
// Key Vault, only when there is a secret to keep. RBAC authorization: the app identity reads
// secrets (Key Vault Secrets User); the deployment writes them through the control plane.

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = if (keyVaultUsed) {
  name: names.vault
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
  }
}

resource webhookSecretEntry 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (keyVaultUsed && !empty(webhookSecret)) {
  parent: vault
  name: secretNames.webhook
  properties: {
    value: webhookSecret
  }
}

resource dataverseClientSecretEntry 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (keyVaultUsed && !empty(dataverseClientSecret)) {
  parent: vault
  name: secretNames.dataverseClient
  properties: {
    value: dataverseClientSecret
  }
}

resource vaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (keyVaultUsed) {
  name: guid(resourceGroup().id, names.vault, appIdentity.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------------------------------------
// Monitoring, with local (key) auth off: the app signs its telemetry with the identity.

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: names.logs
  location: location
  tags: tags
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
  tags: tags
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

resource alertActions 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: names.actionGroup
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'dvrelay-dlq'
    enabled: true
    emailReceivers: [
      {
        name: 'support'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Dead-letter depth. Everything that needs a person ends up as an active message of the
// dead-letter queue: the worker parks its copies there and the main queue forwards its own dead
// letters there (so the main queue's DeadletteredMessages stays at zero and is not watched).
resource deadLetterAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: names.deadLetterAlert
  location: 'global'
  tags: tags
  properties: {
    description: 'Events wait in ${deadLetterQueueName} for support: `handler dlq list` shows them with their reasons.'
    severity: 2
    enabled: true
    scopes: [
      serviceBus.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: 'DeadLetterQueueDepth'
          metricNamespace: 'Microsoft.ServiceBus/namespaces'
          metricName: 'ActiveMessages'
          dimensions: [
            {
              name: 'EntityName'
              operator: 'Include'
              values: [
                deadLetterQueue.name
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Maximum'
        }
      ]
    }
    actions: empty(alertEmail) ? [] : [
      {
        actionGroupId: alertActions.id
      }
    ]
  }
}

// ---------------------------------------------------------------------------------------------
// The Function App: Flex Consumption on Linux, custom handler. On Flex the worker runtime is the
// site's functionAppConfig.runtime ('custom', which the platform exposes to the host as
// FUNCTIONS_WORKER_RUNTIME=custom); the plan rejects FUNCTIONS_WORKER_RUNTIME as an app setting.

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: names.plan
  location: location
  tags: tags
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

// Key Vault references resolve with keyVaultReferenceIdentity (the app identity, below).
var webhookSecretSetting = keyVaultUsed ? '@Microsoft.KeyVault(VaultName=${names.vault};SecretName=${secretNames.webhook})' : webhookSecret
var dataverseClientSecretSetting = keyVaultUsed ? '@Microsoft.KeyVault(VaultName=${names.vault};SecretName=${secretNames.dataverseClient})' : dataverseClientSecret

// Every app setting, in one list. Entries whose value is empty are dropped below, so the
// handler's default applies to every setting not given.
var appSettings = [
  // Host storage by identity (the Functions host).
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
  // Telemetry signed with the identity (the connection string carries no secret).
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: insights.properties.ConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'ClientId=${appIdentity.properties.clientId};Authorization=AAD'
  }
  // Service Bus by identity: read by the trigger ("connection": "ServiceBusConnection") and by
  // the handler's publisher and dead-letter sender, from the same settings.
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
    value: queueName
  }
  {
    name: 'DeadLetterQueueName'
    value: deadLetterQueueName
  }
  // The handler's own settings.
  {
    name: 'DVRELAY_MAX_BODY_BYTES'
    value: maxBodyBytes
  }
  {
    name: 'DVRELAY_WEBHOOK_SECRET'
    value: empty(webhookSecret) ? '' : webhookSecretSetting
  }
  {
    name: 'DVRELAY_WEBHOOK_SECRET_HEADER'
    value: webhookSecretHeader
  }
  {
    name: 'DVRELAY_PUBLISH_TIMEOUT'
    value: publishTimeout
  }
  {
    name: 'DVRELAY_USE_SESSIONS'
    value: useSessions
  }
  {
    name: 'DVRELAY_ACCEPT_STAGES'
    value: acceptStages
  }
  {
    name: 'DVRELAY_SHUTDOWN_GRACE'
    value: shutdownGrace
  }
  {
    name: 'DVRELAY_RETRY_DELAY'
    value: retryDelay
  }
  {
    name: 'DVRELAY_ROUTES'
    value: routesFile
  }
  {
    name: 'DATAVERSE_URL'
    value: dataverseUrl
  }
  {
    name: 'DVRELAY_STRICT_ROUTES'
    value: strictRoutes
  }
  {
    name: 'DVRELAY_MAX_ATTEMPTS'
    value: maxAttempts
  }
  {
    name: 'DVRELAY_IGNORE_USER_IDS'
    value: ignoreUserIds
  }
  {
    name: 'DVRELAY_LOG_LEVEL'
    value: logLevel
  }
  {
    name: 'DVRELAY_LOG_FORMAT'
    value: logFormat
  }
  {
    name: 'DVRELAY_MAX_INFLIGHT'
    value: maxInFlight
  }
  {
    name: 'DVRELAY_MAX_BYTES_IN_FLIGHT'
    value: maxBytesInFlight
  }
  {
    name: 'DVRELAY_CREDIT_URL'
    value: creditUrl
  }
  {
    name: 'DVRELAY_ERP_URL'
    value: erpUrl
  }
  {
    name: 'DVRELAY_SCORE_COLUMN'
    value: scoreColumn
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: dataverseClientId
  }
  {
    name: 'AZURE_TENANT_ID'
    value: dataverseTenantId
  }
  {
    name: 'AZURE_CLIENT_SECRET'
    value: empty(dataverseClientSecret) ? '' : dataverseClientSecretSetting
  }
]

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: names.app
  location: location
  tags: appTags
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
    keyVaultReferenceIdentity: appIdentity.id
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: filter(appSettings, setting => !empty(setting.value))
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
    // The host reads storage, Service Bus and the Key Vault references as soon as it starts.
    deploymentContainer
    storageBlobOwner
    storageTableContributor
    serviceBusSender
    serviceBusReceiver
    vaultSecretsUser
    webhookSecretEntry
    dataverseClientSecretEntry
  ]
}

// azd saves every output in the environment (azd env get-values). The setting-named ones let
// `handler dlq` run against this namespace from a workstation after
// `set -a; eval "$(azd env get-values)"; set +a`.
output AZURE_FUNCTION_APP_NAME string = app.name
output WEBHOOK_URL string = 'https://${app.properties.defaultHostName}/api/dataverse/webhook'
output FUNCTION_KEY_COMMAND string = 'az functionapp function keys list --resource-group ${resourceGroup().name} --name ${app.name} --function-name DataverseWebhook --query default --output tsv'
output APP_IDENTITY_CLIENT_ID string = appIdentity.properties.clientId
output APPLICATIONINSIGHTS_NAME string = insights.name
output ServiceBusConnection__fullyQualifiedNamespace string = serviceBusHost
output ServiceBusQueueName string = mainQueue.name
output DeadLetterQueueName string = deadLetterQueue.name
