"""VirtualDomain's optional extras, one module each, imported only inside the branch of an
action that reads its parameter. Features never import each other."""



