"""Custom actions of the bundled bank bot (rasa_sdk); the bank back-end interface is `actions.core_banking`."""
