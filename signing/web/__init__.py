"""The dashboard: pages to start, watch and cancel runs, and the keys page."""
