"""The batch layer: plan, scheduler, ledger, engine and result of a sweep."""
