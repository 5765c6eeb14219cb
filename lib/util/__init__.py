"""Small helpers every part uses: text fit for UTF-8, redaction of secrets."""
