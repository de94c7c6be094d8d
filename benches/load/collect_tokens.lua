-- wrk script: issue client_credentials tokens and append each access token to $OUT (one per line).
-- Run with one thread (-t1): the file handle belongs to the single Lua state.
wrk.method = "POST"
wrk.body   = os.getenv("BODY") or "grant_type=client_credentials&scope=api&access-token-lifetime=3600"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")

local out = assert(io.open(os.getenv("OUT"), "a"))

function response(status, headers, body)
  if status == 200 then
    local token = body:match('"access_token":"([^"]+)"')
    if token then out:write(token, "\n") end
  end
end

function done(summary, latency, requests)
  out:close()
end
