"""HTTP edge: health, metrics and mail client autoconfiguration."""
