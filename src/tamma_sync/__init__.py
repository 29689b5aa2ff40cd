"""tamma-sync: mirror ELSA 3 workflows into a durable store and serve them to dashboards."""
