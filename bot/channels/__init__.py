"""Channel adapters: each turns its protocol's inbound payload into an `Inbound` and sends the replies back."""
