"""demoapp: the example site's web app, keeping titled blobs in ZODB through ZEO."""
