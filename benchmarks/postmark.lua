-- wrk script for benchmarks/http_load.py: a fixed number of Postmark bounce deliveries.
--
--   wrk -t T -c C -d MAX --latency -s postmark.lua URL -- PATH PER_THREAD BODY_FILE ID_BASE USERS AUTH
--
-- Every request posts the body template from BODY_FILE with its own Postmark ID
-- (__ID__) and a user's address (__EMAIL__), so that nothing is a redelivery.
-- Each thread stops after PER_THREAD responses and says so on stdout (wrk itself
-- would wait out its -d duration: http_load.py interrupts it then); the run's
-- duration is measured here, from the first request to the last response, and
-- done() prints it with the figures as one JSON line.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]
local timespec = ffi.new("bench_timespec")

local function now_us()
  ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC
  return tonumber(timespec.tv_sec) * 1000000 + math.floor(tonumber(timespec.tv_nsec) / 1000)
end

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_number", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  path = args[1]
  quota = tonumber(args[2])
  local file = assert(io.open(args[3], "rb"))
  template = file:read("*a")
  file:close()
  -- Threads draw IDs from disjoint ranges.
  next_id = tonumber(args[4]) + thread_number * 100000000
  users = tonumber(args[5])
  wrk.headers["Authorization"] = "Basic " .. args[6]
  wrk.headers["Content-Type"] = "application/json"
  answered = 0
  not_ok = 0
  first_us = 0
  last_us = 0
end

function request()
  if first_us == 0 then
    first_us = now_us()
  end
  next_id = next_id + 1
  local email = string.format("user%05d@example.com", (next_id * 7919) % users)
  local body = template:gsub("__ID__", tostring(next_id)):gsub("__EMAIL__", email)
  return wrk.format("POST", path, nil, body)
end

function response(status, headers, body)
  last_us = now_us()
  answered = answered + 1
  if status ~= 200 then
    not_ok = not_ok + 1
  end
  if answered == quota then
    io.write("WRK_THREAD_DONE\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local answered_total, not_ok_total, first, last = 0, 0, nil, 0
  for _, thread in ipairs(threads) do
    answered_total = answered_total + thread:get("answered")
    not_ok_total = not_ok_total + thread:get("not_ok")
    local started = thread:get("first_us")
    if started > 0 and (first == nil or started < first) then
      first = started
    end
    last = math.max(last, thread:get("last_us"))
  end
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "answered": %d, "not_200": %d, "duration_us": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "errors": %d}\n',
    summary.requests, answered_total, not_ok_total, last - (first or last),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  ))
end
