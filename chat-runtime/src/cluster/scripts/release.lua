-- release: ARGV[4] the CONN, ARGV[5] the nick KEY.
-- Returns 1 if the conn held the key and it is gone, else 0.
if release(TOKEN, ARGV[4], ARGV[5]) then
  return 1
end
return 0
