-- Written by: ai-responder.
-- Replies at the model's pace (docs/architecture.md, "Replies"). No database connection is held
-- while a reply waits for its debounce or its model call; instead the conversation row says who
-- is composing its reply:
--   reply_lease     the attempt (a random id per try) composing the reply now, NULL when nobody;
--   reply_lease_by  the process holding it: its key in a session advisory lock that the process
--                   holds for its lifetime (tistis_ai_responder.lease), so another process can
--                   tell a live holder from a dead one without a timeout, and the same process
--                   knows its own live attempts;
--   answered_through  created_at of the newest patient message a reply has answered: messages
--                   stored while the model was thinking are after it, and get the next reply.
ALTER TABLE conversations
  ADD COLUMN reply_lease uuid,
  ADD COLUMN reply_lease_by int,
  ADD COLUMN answered_through timestamptz;
