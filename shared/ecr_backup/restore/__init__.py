"""Reading backups back: catalog and views, targets, plans, pushes and exports."""
