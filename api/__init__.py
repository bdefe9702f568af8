"""The likes API: anonymous post likes on PostgreSQL, with Redis for rate limits and cached counts."""
