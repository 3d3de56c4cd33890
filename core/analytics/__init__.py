"""Analytics: events per person and per org, fed by every feature, queried fast at scale.

The operations both doors call, one module per noun: `ingestion` (record events), `trend_series`
(trends), `funnels`, `summaries` (the business summary) and `raw_events` (the event list).
They share `policy` (scopes, who sees members), `_queries` (range, time limit, SQL),
`presenters` and `counting` (the rollup-or-raw engine); writing is `parsing`, `fastpath`,
`partitions` and `store`.
"""

from core.analytics.funnels import funnel
from core.analytics.ingestion import ingest
from core.analytics.policy import INGEST, READ
from core.analytics.raw_events import list_events
from core.analytics.summaries import summary
from core.analytics.trend_series import trends

__all__ = ["INGEST", "READ", "funnel", "ingest", "list_events", "summary", "trends"]
