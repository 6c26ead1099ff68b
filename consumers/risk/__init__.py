"""The risk view: what the registry answers about one (pseudonymised) borrower."""
