-- wrk script for the risk API benchmark (bench/query.py): every request is a
-- POST /api/v1/frequency for a borrower drawn in turn from a file of raw ids (one per line),
-- each thread starting at its own offset. At the end it prints ONE JSON line with the latency
-- percentiles (ms) and the request and error counts wrk measured.
--
-- usage: wrk -t2 -c16 -d20s -s bench/frequency.lua http://HOST:PORT/api/v1/frequency -- IDS TOKEN

local ids = {}
local next_id = 1
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_no", #threads)
end

function init(args)
  local path, token = args[1], args[2]
  for line in io.lines(path) do
    if #line > 0 then ids[#ids + 1] = line end
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. token
  next_id = 1 + ((thread_no or 1) * 7919) % #ids
end

function request()
  local id = ids[next_id]
  next_id = next_id % #ids + 1
  return wrk.format(nil, nil, nil,
    '{"borrower_id": "' .. id .. '", "window_days": 30, "purpose": "loan_application"}')
end

function done(summary, latency, requests)
  local e = summary.errors
  local function ms(q) return latency:percentile(q) / 1000.0 end
  io.write(string.format(
    '{"wrk": true, "requests": %d, "duration_us": %d, "connect_errors": %d, '
    .. '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, '
    .. '"p50": %.3f, "p95": %.3f, "p99": %.3f, "p99.9": %.3f, "max": %.3f, "mean": %.3f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    ms(50), ms(95), ms(99), ms(99.9), latency.max / 1000.0, latency.mean / 1000.0))
end
