"""Analytics: events per person and per org, fed by every feature, queried fast at scale."""
