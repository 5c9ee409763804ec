"""Facts from libvirt and from this host: the connection, one domain, the user's domain XML,
the emulator processes. Reports facts and raises only the fact errors (errors.LibvirtFact)
and, for the config file, the configuration errors; never decides an action's outcome."""



