-- wrk script for both servers of the comparison: one client_credentials request per call,
-- authenticated with HTTP Basic.
--   BASIC  base64 of "client_id:client_secret" (required)
--   BODY   the form body (default: the client_credentials grant for scope `api`)
local basic = os.getenv("BASIC")
if basic == nil or basic == "" then
  error("set BASIC to base64(client_id:client_secret)")
end
wrk.method = "POST"
wrk.headers["Authorization"] = "Basic " .. basic
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = os.getenv("BODY") or "grant_type=client_credentials&scope=api"
