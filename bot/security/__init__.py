"""What the server believes and keeps: masking of personal data, rate limits, credentials, the edge guards."""
