-- wrk script: revoke distinct access tokens read from $TOKENS through /connect/revocation.
-- Each wrk thread takes every THREADS-th token starting at its own offset, so no token is
-- revoked twice (a repeat would be a cheap no-op and flatter the figure). Counts non-200s.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  tokens = {}
  local threads_total = tonumber(os.getenv("THREADS") or "2")
  local i = 0
  for line in io.lines(os.getenv("TOKENS")) do
    if i % threads_total == id then table.insert(tokens, line) end
    i = i + 1
  end
  next_token = 1
  failures = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")
end

function request()
  local token = tokens[next_token]
  if token == nil then token = "exhausted" end
  next_token = next_token + 1
  return wrk.format(nil, nil, nil, "token=" .. token)
end

function response(status, headers, body)
  if status ~= 200 then failures = failures + 1 end
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    io.write(string.format("thread %d: non-200 responses: %d, tokens used: %d\n",
      thread:get("id"), thread:get("failures"), thread:get("next_token") - 1))
  end
end
