"""The site as it runs, held against the site as the hostconfig wants it: one read, the difference, and
the commands that close it."""
