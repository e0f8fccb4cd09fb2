-- post.lua: wrk script for scripts/bench. One fixed JSON POST, formatted
-- once per thread (no request() function, so wrk sends the same bytes
-- without calling Lua per request).
--
--   wrk ... URL -s post.lua -- BODY
function init(args)
   wrk.method = "POST"
   wrk.body = args[1]
   wrk.headers["Content-Type"] = "application/json"
end
