-- cycle.lua: wrk script for scripts/bench. Every request carries the next
-- key of a file of plaintext keys (one a line), so a run touches the keys in
-- turn rather than one hot key.
--
--   wrk ... URL -s cycle.lua -- KEYS_FILE COUNT MODE [OFFSET [SCOPE]]
--
-- COUNT: use the first COUNT keys of the file (0: all). MODE "auth" sends
-- GET <URL's path> with Authorization: Bearer <key>; "verify" sends
-- POST <URL's path> with {"key":"<key>","scopes":["<SCOPE>"]}. OFFSET
-- (modulo the key count) is where the first thread starts.
--
-- wrk's Lua API has no per-connection hook: request() is called by a
-- thread for whichever of its connections sends next. Each thread keeps one
-- cursor, starting at its own offset (thread i at OFFSET + i/16 of the list), so
-- the connections of a thread present consecutive keys and no two requests
-- in flight carry the same key until the list wraps around.

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

local keys, n, cursor = {}, 0, 0
local head, tail = "", ""

function init(args)
   local file, count, mode = args[1], tonumber(args[2] or "0"), args[3] or "auth"
   local offset, scope = tonumber(args[4] or "0"), args[5] or "data:read"
   for line in io.lines(file) do
      if line ~= "" then
         n = n + 1
         keys[n] = line
         if count > 0 and n >= count then break end
      end
   end
   if n == 0 then
      error("cycle.lua: no keys in " .. file)
   end
   local host = wrk.host
   if wrk.port then host = host .. ":" .. wrk.port end
   -- Spread the threads' starting points over the list (setup ran in the
   -- main state, so the thread count is not known here; 16 is wrk's
   -- practical maximum on a bench machine).
   cursor = (offset + (id or 0) * math.floor(n / 16)) % n
   if mode == "verify" then
      head = { "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. host ..
               "\r\nContent-Type: application/json\r\nContent-Length: ",
               "\r\n\r\n{\"key\":\"", "\",\"scopes\":[\"" .. scope .. "\"]}" }
      local fixed = #"{\"key\":\"" + #("\",\"scopes\":[\"" .. scope .. "\"]}")
      request = function()
         cursor = cursor % n + 1
         local k = keys[cursor]
         return head[1] .. (fixed + #k) .. head[2] .. k .. head[3]
      end
   elseif mode == "auth" then
      head = "GET " .. wrk.path .. " HTTP/1.1\r\nHost: " .. host .. "\r\nAuthorization: Bearer "
      tail = "\r\n\r\n"
      request = function()
         cursor = cursor % n + 1
         return head .. keys[cursor] .. tail
      end
   else
      error("cycle.lua: MODE must be auth or verify, not " .. tostring(mode))
   end
end

-- Defined at load time so that wrk knows the script makes its own requests;
-- init replaces it.
function request()
   return wrk.format()
end
