package user

// RegisteredType is the CloudEvents type of a new account.
const RegisteredType = "user.registered"

// Registered is the user.registered payload (docs/conventions.md). It
// carries no password material, hashed or not.
type Registered struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
}

// Registered is the event a new account records.
func (u User) Registered() Registered { return Registered{UserID: u.ID, Email: u.Email} }
