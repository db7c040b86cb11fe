"""The storage layer: the queue file, apsw and SQL only; no Django."""
