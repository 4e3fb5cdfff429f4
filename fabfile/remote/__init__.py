"""One host over SSH: the site's connection and facts, locks, events, jobs, notifications, parallel runs."""
