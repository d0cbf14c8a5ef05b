// Package app holds the payment service's use cases, one per file.
package app

import (
	"time"

	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// Application bundles the use cases for the ports and consumers.
type Application struct {
	ChargeOrder      ChargeOrderHandler
	CancelOrder      CancelOrderHandler
	GetPayment       GetPaymentHandler
	ListPayments     ListPaymentsHandler
	RecordDeadLetter RecordDeadLetterHandler
	Settle           SettleHandler
}

// Deps are what the use cases need from outside. Rules is a function so the
// decline rules follow the dynamic configuration without a restart.
type Deps struct {
	Payments payment.Repository
	Provider payment.Provider
	Rules    func() payment.Rules
	NewID    func() string
	Now      func() time.Time
}

func New(d Deps) Application {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Rules == nil {
		d.Rules = func() payment.Rules { return payment.Rules{} }
	}
	return Application{
		ChargeOrder:      ChargeOrderHandler{d: d},
		CancelOrder:      CancelOrderHandler{d: d},
		GetPayment:       GetPaymentHandler{payments: d.Payments},
		ListPayments:     ListPaymentsHandler{payments: d.Payments},
		RecordDeadLetter: RecordDeadLetterHandler{payments: d.Payments, newID: d.NewID, now: d.Now},
		Settle:           SettleHandler{d: d},
	}
}
