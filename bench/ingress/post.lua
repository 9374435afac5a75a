-- wrk script: POSTs pre-signed, unique WhatsApp webhooks (one per line of BODIES:
-- "<signature>\t<json>") to PATH; each thread takes its own slice so no message id repeats.
-- With RATE set (requests/s for the whole run), requests are paced open-loop per thread.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_usec; } timeval;
  int gettimeofday(timeval *tv, void *tz);
]]
local tv = ffi.new("timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

local threads, counter = {}, 0

function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("BENCH_PATH")
  local file = os.getenv("BENCH_BODIES")
  local nthreads = tonumber(os.getenv("BENCH_THREADS"))
  local rate = tonumber(os.getenv("BENCH_RATE") or "0")
  requests_list, i = {}, 0
  local n = 0
  for line in io.lines(file) do
    n = n + 1
    if n % nthreads == index - 1 then
      local tab = line:find("\t")
      local sig, body = line:sub(1, tab - 1), line:sub(tab + 1)
      table.insert(requests_list, wrk.format("POST", path, {
        ["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = "sha256=" .. sig,
      }, body))
    end
  end
  interval = rate > 0 and (1000 * nthreads / rate) or 0
  next_at = now_ms()
  exhausted = false
end

function request()
  i = i + 1
  if i > #requests_list then
    exhausted = true
    i = 1 -- wrapped: the ingress will count duplicates; the runner sizes the file to avoid it
  end
  return requests_list[i]
end

function delay()
  if interval == 0 then return 0 end
  next_at = next_at + interval
  local wait = next_at - now_ms()
  return wait > 0 and wait or 0
end
