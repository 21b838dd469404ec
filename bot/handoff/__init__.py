"""Handing conversations to people: triggers, routing to skill groups, the queue, agents and their desk."""
