package harborapi

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
)

// Paging is what listing a collection took.
type Paging struct {
	Total int // X-Total-Count
	Pages int // pages fetched
}

// maxPages stops a Link chain that never ends.
const maxPages = 1000

// linkRel matches one `<url>; rel="x"` of a Link header. Harbor joins them with " , " and
// unescapes the query (BaseAPI.Links), so splitting on commas could cut a URL in two.
var linkRel = regexp.MustCompile(`<([^>]*)>\s*;\s*rel="?([^",;\s]+)"?`)

// nextLink is the rel="next" URL of a Link header, or "".
func nextLink(header string) string {
	for _, m := range linkRel.FindAllStringSubmatch(header, -1) {
		if m[2] == "next" {
			return m[1]
		}
	}
	return ""
}

// list GETs every page of a collection at path (escaped), starting at page 1 with the client's
// page size and following Link rel="next" as Harbor builds it (it keeps the path as sent, so a
// twice-encoded repository name stays twice-encoded). It checks that X-Total-Count holds on
// every page and equals the number of items gathered.
func list[T any](ctx context.Context, c *Client, path string, query url.Values, header http.Header) ([]T, Paging, error) {
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("page", "1")
	q.Set("page_size", strconv.Itoa(c.PageSize))
	ref := path + "?" + q.Encode()
	var all []T
	var p Paging
	seen := map[string]bool{}
	for ref != "" {
		if seen[ref] || p.Pages == maxPages {
			return nil, p, fmt.Errorf("GET %s: the Link header loops or never ends (at %s)", path, ref)
		}
		seen[ref] = true
		var page []T
		resp, err := c.getJSON(ctx, ref, &page, header)
		if err != nil {
			return nil, p, err
		}
		p.Pages++
		total, err := strconv.Atoi(resp.Header.Get("X-Total-Count"))
		if err != nil {
			return nil, p, fmt.Errorf("GET %s: X-Total-Count %q is not a count", ref, resp.Header.Get("X-Total-Count"))
		}
		if p.Pages > 1 && total != p.Total {
			return nil, p, fmt.Errorf("GET %s: X-Total-Count changed from %d to %d while paging", ref, p.Total, total)
		}
		p.Total = total
		if len(page) > c.PageSize {
			return nil, p, fmt.Errorf("GET %s: %d items on a page of %d", ref, len(page), c.PageSize)
		}
		all = append(all, page...)
		ref = nextLink(resp.Header.Get("Link"))
	}
	if len(all) != p.Total {
		return nil, p, fmt.Errorf("GET %s: X-Total-Count is %d but the %d pages held %d items", path, p.Total, p.Pages, len(all))
	}
	return all, p, nil
}
