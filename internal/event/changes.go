package event

import "strings"

// isPlatformStamp reports the columns Dataverse writes itself: on every save (modifiedon and
// the like) or from the caller's identity on Create (the owning user, team and business unit,
// which follow ownerid). They say nothing about what the user changed, so they never appear in
// ChangedFields (they stay in Attributes).
func isPlatformStamp(column string) bool {
	switch column {
	case "modifiedon", "modifiedby", "modifiedonbehalfby",
		"createdon", "createdby", "createdonbehalfby",
		"timezoneruleversionnumber", "versionnumber", "overriddencreatedon", "importsequencenumber",
		"owninguser", "owningteam", "owningbusinessunit":
		return true
	}
	return false
}

// isChange reports whether column, set to value by a message on record recordID of table entity,
// names a change a user made, and so belongs in ChangedFields. Not a change: a platform stamp,
// the primary key (<entity>id, or activityid for an activity table, whose key column is
// activityid), and on Create an all-zero processid, the business process column a Create fills
// with Guid.Empty when no process applies. The intake applies it to a posted Target's columns and
// FromReread to a re-read record's, so both name the same columns for one Create.
func isChange(message, entity, recordID, column string, value any) bool {
	if isPlatformStamp(column) || column == entity+"id" {
		return false
	}
	id, isString := value.(string)
	switch {
	case column == "activityid" && isString && strings.EqualFold(id, recordID):
		return false
	case column == "processid" && message == "Create" && isString && id == nilGUID:
		return false
	}
	return true
}
