"""What every action shares: the action context, the state record, which domain the resource
means (config or record), the host's other definitions of it, and the last resort."""



