//! Thin fuser adapter: hands each request to a worker, calls the core, replies or maps the error.
