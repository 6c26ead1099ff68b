-- Lender corrections (README, Corrections): a cancel is a ledger row of its own, with
-- event_type 'cancel' and the event_id it withdraws. The withdrawn event's row stays (kept for
-- audit); it counts nowhere because a cancel row of the same borrower and lender names it.
-- Other rows have ''.
ALTER TABLE admitted_events ADD COLUMN IF NOT EXISTS cancels_event_id String DEFAULT '';
