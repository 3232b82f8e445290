-- wrk script for bench/forward.sh: POSTs a card-shaped JSON body, either straight to the receiver
-- (FORWARD_MODE=direct, the body already filled) or through POST /forward or the bare relay (placeholders, the token and
-- the destination in headers). Settings come from the environment.

local mode = os.getenv("FORWARD_MODE") or "forward"
local key = os.getenv("STRONGROOM_BENCH_KEY")
local token = os.getenv("FORWARD_TOKEN")
local destination = os.getenv("FORWARD_DESTINATION")

local forwarded = '{"amount":1000,"currency":"EUR","card":{"number":"{{ account_number }}",'
  .. '"exp_month":"{{ expiration_month | unwrap }}","exp_year":"{{ expiration_year | unwrap }}",'
  .. '"name":"{{ cardholder_name }}"}}'
local direct = '{"amount":1000,"currency":"EUR","card":{"number":"4111111111111111",'
  .. '"exp_month":4,"exp_year":2031,"name":"Bench Holder"}}'

function request()
  if mode == "direct" then
    return wrk.format("POST", "/hook", { ["Content-Type"] = "application/json" }, direct)
  end
  return wrk.format("POST", "/forward", {
    ["Content-Type"] = "application/json",
    ["X-API-Key"] = key,
    ["X-Hellgate-Token"] = token,
    ["X-Destination-Url"] = destination,
  }, forwarded)
end
