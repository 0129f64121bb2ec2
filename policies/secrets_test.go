package policies

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCredentialsNeverFormat(t *testing.T) {
	c := BasicCredentials{Username: "robot$team+ci", Password: "s3cr3t-value"}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		assert.NotContains(t, fmt.Sprintf(verb, c), "s3cr3t-value", verb)
		assert.NotContains(t, fmt.Sprintf(verb, &c), "s3cr3t-value", verb)
	}
	assert.Equal(t, "Basic cm9ib3QkdGVhbStjaTpzM2NyM3QtdmFsdWU=", c.Header())
}
