"""Read models that follow the event store (SQLAlchemy tables) and the reports."""
