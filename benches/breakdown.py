#!/usr/bin/env python3
"""Splits the instructions of a request into groups of functions, from the callgrind dumps that
benches/instructions.sh keeps (KEEP=DIR):

  KEEP=/tmp/prof N=5000 bash benches/instructions.sh
  python3 benches/breakdown.py /tmp/prof REQUESTS

Each group is the inclusive count of the functions that enter it (callgrind_annotate
--inclusive=yes), divided by REQUESTS:

  TLS      rustls reading and decrypting records (handshakes included), encrypting and writing
  decode   review::decode: serde_json over the body, the fields read kept, the rest skipped
  judge    Validator::review: references, lookups in memory, the rules (metrics taken out)
  encode   review::encode: the answer's JSON
  log      tracing: the review's span and events
  metrics  the review's and its lookups' counters, the latency histogram
  handler  the rest of the /validate handler: the body collected from hyper, the response built
  HTTP     everything else: hyper, h2, axum's routing and middleware, tower, tokio's scheduling

The floor (examples/floor_server.rs) has TLS, HTTP and its handler only. "webhook - floor" is the
review's own work; its TLS and HTTP rows are what the webhook's stack does beyond the floor's.
"""

import os
import re
import subprocess
import sys

TLS = [
    "tokio_rustls::common::Stream<IO,C>::read_io",
    "<rustls::conn::ConnectionCommon<T> as rustls::conn::connection::PlaintextSink>::write_vectored",
    "rustls::vecbuf::ChunkVecBuffer::write_to",
]
LOG = [
    "tracing::span::Span::new",
    "tracing_core::event::Event::dispatch",
    "core::ptr::drop_in_place<tracing::span::Span>",
    "core::ptr::drop_in_place<tracing::instrument::Instrumented<stash_webhook::validator::Validator::review::{{closure}}>>",
    "<tracing::span::Span as core::clone::Clone>::clone",
]
LOOKUP_METRICS = "stash_webhook::metrics::Metrics::record_lookup"
REVIEW_METRICS = "stash_webhook::metrics::Metrics::record_review"


def inclusive(dump):
    """{function: inclusive instructions} of a callgrind dump."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    costs = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+[^:]*:(.*) \[", line)
        if m:
            name = m.group(2)
            costs[name] = max(costs.get(name, 0), int(m.group(1).replace(",", "")))
    total = next(int(l.split()[0].replace(",", "")) for l in out.splitlines() if "PROGRAM TOTALS" in l)
    return costs, total


def groups(dump, handler):
    costs, total = inclusive(dump)
    get = lambda name: costs.get(name, 0)
    g = {"TLS": sum(get(f) for f in TLS)}
    app = get(handler)
    if handler.startswith("stash_webhook"):
        g["decode"] = get("stash_webhook::review::decode")
        g["judge"] = get("stash_webhook::validator::Validator::review::{{closure}}") - get(LOOKUP_METRICS)
        g["encode"] = get("stash_webhook::review::encode")
        g["log"] = sum(get(f) for f in LOG)
        g["metrics"] = get(LOOKUP_METRICS) + get(REVIEW_METRICS)
        g["handler"] = app - sum(g[k] for k in ("decode", "judge", "encode", "log")) - get(REVIEW_METRICS)
    else:
        g["handler"] = app
    g["HTTP"] = total - app - g["TLS"]
    g["total"] = total
    return g


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    directory, n = sys.argv[1], int(sys.argv[2])
    webhook = groups(os.path.join(directory, "webhook.out"), "stash_webhook::http::router::answer::{{closure}}")
    floor = groups(os.path.join(directory, "floor.out"), "floor_server::answer::{{closure}}")
    rows = ["TLS", "HTTP", "handler", "decode", "judge", "encode", "log", "metrics", "total"]
    print(f"{'group':<10} {'webhook':>10} {'floor':>10} {'webhook - floor':>16}   (instructions per request)")
    for row in rows:
        w, f = webhook.get(row, 0) / n, floor.get(row, 0) / n
        print(f"{row:<10} {w:>10,.0f} {f:>10,.0f} {w - f:>16,.0f}")


if __name__ == "__main__":
    main()
