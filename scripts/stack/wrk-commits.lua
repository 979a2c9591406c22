-- wrk script for the zero-downtime test:
--   wrk -t1 -c4 -d10s -s scripts/stack/wrk-commits.lua http://127.0.0.1:PORT/
-- Counts responses per status and per `commit=<hash>` found in the body (www/index.php of
-- examples/php-app), and prints one machine-readable line at the end:
--   wrk-commits: requests=N non2xx=N socket_errors=N commit:<hash>=N ... status:<code>=N ...
-- (socket_errors = connect + read + write + timeout, from wrk's own summary)
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   counts = {}
end

function response(status, headers, body)
   local key = "status:" .. status
   counts[key] = (counts[key] or 0) + 1
   local commit = body and body:match("commit=(%x+)")
   key = "commit:" .. (commit or "none")
   counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   for _, t in ipairs(threads) do
      local c = t:get("counts")
      for k, v in pairs(c or {}) do total[k] = (total[k] or 0) + v end
   end
   local e = summary.errors
   local keys = {}
   for k in pairs(total) do table.insert(keys, k) end
   table.sort(keys)
   local parts = {}
   for _, k in ipairs(keys) do table.insert(parts, k .. "=" .. total[k]) end
   io.write(string.format("wrk-commits: requests=%d non2xx=%d socket_errors=%d %s\n",
      summary.requests, e.status, e.connect + e.read + e.write + e.timeout,
      table.concat(parts, " ")))
end
