"""The email channel: inbound mail (SMTP, IMAP) and outbound replies (SMTP)."""
