package api

import "github.com/neural-hive/hive-identity/internal/server/datastore"

// MaxPageSize caps the page size a client may ask for, so that a huge value
// cannot make the server preallocate or hold a huge page (CONFORMANCE T14).
// A capped request still pages correctly: it returns fewer items and a token.
const MaxPageSize = 5000

// Pagination converts a request's page size and token: nil (no paging)
// when size is 0 or negative, as in SPIRE; sizes above MaxPageSize are
// capped.
func Pagination(size int32, token string) *datastore.Pagination {
	if size <= 0 {
		return nil
	}
	return &datastore.Pagination{PageSize: min(size, MaxPageSize), Token: token}
}
