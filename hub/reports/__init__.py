"""Reports of a period: tables, text and CSV, charts, the scheduled digest."""
