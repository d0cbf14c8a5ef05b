// Package user is the user service: registration, argon2id passwords, sessions with EdDSA JWTs and rotating refresh tokens, JWKS.
package user
