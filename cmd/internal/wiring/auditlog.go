package wiring

import (
	"io"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// AuditLogger is the logger of the proxy's one line per request: JSON like the binaries' other
// lines (controller-runtime's production zap: RFC 3339 times, "level", "logger", "msg"), at info
// level whatever --zap-log-level says, and never sampled. Production zap keeps the first 100
// lines of a message per second and then 1 in 100, and every request line is the same message,
// so under load most requests went unrecorded.
func AuditLogger(w io.Writer) logr.Logger {
	cfg := zap.NewProductionEncoderConfig()
	cfg.EncodeTime = zapcore.RFC3339TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(cfg), zapcore.Lock(zapcore.AddSync(w)), zapcore.InfoLevel)
	return zapr.NewLogger(zap.New(core))
}
