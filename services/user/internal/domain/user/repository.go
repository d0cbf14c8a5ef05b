package user

import "context"

// Repository stores accounts.
type Repository interface {
	// Add stores a new account and its user.registered event in one
	// transaction, so the event is published if and only if the account
	// exists. A taken email is ErrEmailTaken.
	Add(ctx context.Context, u User) error
	// ByID and ByEmail return ErrNotFound when there is no such account.
	ByID(ctx context.Context, id string) (User, error)
	ByEmail(ctx context.Context, email string) (User, error)
	// EmailTaken reports whether an account is stored under email (in a
	// form CheckNewEmail accepts) or under an address that reads as email
	// (VisibleEmail): one an older release stored with an invisible
	// character in it, which a new account beside it would look like.
	EmailTaken(ctx context.Context, email string) (bool, error)
	// Update loads the account, applies fn and stores the result in one
	// transaction.
	Update(ctx context.Context, id string, fn func(*User) error) (User, error)
	// SetPasswordHash replaces the stored hash, and only the hash (profile
	// updates never touch it), if it is still old, the one the caller
	// verified a password against; ErrHashChanged if another writer replaced
	// it meanwhile. Unconditional, a login's rehash of the old password
	// wrote over a password change that committed while it hashed.
	SetPasswordHash(ctx context.Context, id, old, hash string) error
}

// ProfileCache keeps profiles close to the handlers. It is a cache, not a
// store: a miss or an error sends the caller to the Repository.
type ProfileCache interface {
	// Get returns ok=false on a miss, with gen, the profile's generation in
	// the cache, for the Set of what the caller then reads from the
	// Repository. A value the cache holds but cannot read is a miss too,
	// reported with an error whose Miss() is true and a usable gen, so the
	// fill replaces it; any other error means gen is unknown and nothing
	// should be filled.
	Get(ctx context.Context, id string) (p Profile, gen string, ok bool, err error)
	// Set caches p unless Delete ran since the Get that returned gen: p was
	// read before the change that Delete was for, and would hide it.
	Set(ctx context.Context, p Profile, gen string) error
	// Delete drops the cached profile and starts a new generation.
	Delete(ctx context.Context, id string) error
}
