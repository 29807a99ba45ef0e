"""The web console: pages for supervisors, marketers, admins and managers at a desk,
served by the hub at ``console.listen`` (``app.py`` lists its sections)."""
