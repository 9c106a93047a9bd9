"""Where alerts (and, optionally, events) are kept and queried: the embedded
SQLite store for one machine, Elasticsearch for production. Both implement
`console.stores.base.Store`, so the console never knows which it talks to."""
