"""SMS order webhooks (Twilio-style and Vonage-style): signatures, the endpoints and the
record of provider message ids. See docs/sms.md."""
