"""Scheduler plugins, one module each: a NAME, reason strings, and the events that requeue."""
