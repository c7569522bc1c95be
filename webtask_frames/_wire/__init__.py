"""The wire layer: settings, policies, wire models, protocol decisions, the HTTP client."""
