-- Written by: dispatcher.
-- Which dispatcher process claimed a message (pending -> sending). Each process holds a
-- PostgreSQL session advisory lock on its own key for its lifetime (tistis_dispatcher.lease), so a
-- redelivered event for a `sending` row can tell a claimer that is still working from one that
-- died (kill -9, OOM): the lock is free only when the claimer's session is gone.
ALTER TABLE messages ADD COLUMN claimed_by int;
