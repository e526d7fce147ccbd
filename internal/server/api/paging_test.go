package api_test

import (
	"testing"

	"github.com/neural-hive/hive-identity/internal/server/api"
)

// T14: the page size a client asks for is capped.
func TestPagination_T14(t *testing.T) {
	if p := api.Pagination(1<<30, "tok"); p.PageSize != api.MaxPageSize || p.Token != "tok" {
		t.Fatalf("got %+v", p)
	}
	if p := api.Pagination(10, ""); p.PageSize != 10 {
		t.Fatalf("got %+v", p)
	}
	if api.Pagination(0, "x") != nil || api.Pagination(-5, "x") != nil {
		t.Fatal("no page size must mean no paging, as SPIRE")
	}
}
