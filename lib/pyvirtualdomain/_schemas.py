"""Compiled from metadata/*.xml by tools/gen_schemas.py (`make schemas`).

Do not edit: regenerate after changing the metadata. See metadata.py.
"""

SCHEMAS = {
    'PyVirtualDomain': (268863814, 'PyVirtualDomain', (
        ('config', 'string', '', True, 'Domain XML file'),
        ('hypervisor', 'string', '', False, 'Hypervisor URI'),
        ('force_stop', 'boolean', 'false', False, 'Always force stop'),
        ('shutdown_mode', 'string', '', False, 'Graceful shutdown method(s)'),
        ('migration_transport', 'string', '', False, 'Remote hypervisor transport'),
        ('migration_user', 'string', '', False, 'Remote user for the target URI'),
        ('migration_downtime', 'integer', '0', False, 'Live migration downtime (ms)'),
        ('migration_speed', 'integer', '0', False, 'Live migration speed (MiB/s)'),
        ('migration_network_suffix', 'string', '', False, 'Migration network host name suffix'),
        ('migrateuri', 'string', '', False, 'Custom migration URI'),
        ('migrate_options', 'string', '', False, 'Live migration options'),
        ('migrateport', 'integer', None, False, 'Migration port'),
        ('remoteuri', 'string', '', False, 'Target hypervisor URI'),
        ('migration_deadline_action', 'string', 'abort', False, 'Action when a migration would not finish in time'),
        ('autoset_utilization_cpu', 'boolean', 'true', False, 'Set the cpu utilization attribute'),
        ('autoset_utilization_host_memory', 'boolean', 'true', False, 'Set the host_memory utilization attribute'),
        ('autoset_utilization_hv_memory', 'boolean', 'true', False, 'Set the hv_memory utilization attribute'),
        ('unset_utilization_cpu', 'boolean', 'false', False, 'Remove the cpu utilization attribute'),
        ('unset_utilization_host_memory', 'boolean', 'false', False, 'Remove the host_memory utilization attribute'),
        ('unset_utilization_hv_memory', 'boolean', 'false', False, 'Remove the hv_memory utilization attribute'),
        ('monitor_scripts', 'string', '', False, 'Monitor scripts'),
        ('save_config_on_stop', 'boolean', 'false', False, "Save the domain's definition on stop"),
        ('sync_config_on_stop', 'boolean', 'false', False, 'Save and sync the config on stop'),
        ('snapshot', 'string', '', False, 'Snapshot directory'),
        ('start_resources', 'boolean', 'false', False, 'Start the pools and networks the domain needs'),
        ('backingfile', 'string', '', False, 'Backing file for copy-on-write mode'),
        ('stateless', 'boolean', 'false', False, 'Re-create the overlay at each start'),
        ('copyindirs', 'string', '', False, 'Directories copied into a new overlay'),
        ('guest_agent_misses', 'integer', '3', False, 'Missed guest-agent pings before failing'),
        ('fail_on_io_error', 'boolean', 'true', False, 'Fail a domain paused by a disk I/O error'),
    ), {'start': 90.0, 'stop': 90.0, 'status': 30.0, 'monitor': 30.0, 'migrate_to': 120.0, 'migrate_from': 60.0, 'meta-data': 5.0, 'validate-all': 5.0}, ('start', 'stop', 'status', 'monitor', 'migrate_to', 'migrate_from', 'meta-data', 'validate-all')),
    'PyLXCDomain': (2395250203, 'PyLXCDomain', (
        ('config', 'string', '', True, 'Domain XML file'),
        ('hypervisor', 'string', '', False, 'Hypervisor URI'),
        ('force_stop', 'boolean', 'false', False, 'Always force stop'),
        ('shutdown_mode', 'string', '', False, 'Graceful shutdown method(s)'),
    ), {'start': 60.0, 'stop': 60.0, 'status': 30.0, 'monitor': 30.0, 'meta-data': 5.0, 'validate-all': 5.0}, ('start', 'stop', 'status', 'monitor', 'meta-data', 'validate-all')),
}
